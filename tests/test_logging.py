"""Logging from an experiment: artefacts, figures, images, text, mappings and tags, end to end.

Real pytest sessions (without xdist and under ``-n 2``; in a subprocess where numpy is imported,
which cannot be imported twice in one process) write into a real store; what they
logged is read back through the Store API and from the run folders themselves.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from pytest_experiments import Store

PNG = b"\x89PNG\r\n\x1a\n"

EVERY_KIND = """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import pytest
    from PIL import Image

    @pytest.mark.grid(seed=[0, 1, 2])
    def test_fit(xp, seed, tmp_path):
        source = tmp_path / "model.bin"
        source.write_bytes(b"weights" * seed)
        assert xp.log_artifact(source) == xp.dir / "model.bin"
        xp.log_artifact(str(source), name="copies/model-copy.bin")
        xp.log_artifact(b"\\x00\\x01", name="raw.bin")
        xp.log_text("notes", "seed %d ✓" % seed)
        xp.log_dict("config", {"seed": seed, "lr": np.float32(0.5), "layers": (1, 2)})
        figure, axes = plt.subplots()
        axes.plot([0, 1], [seed, 1])
        xp.log_figure(figure, "curve")
        _, other = plt.subplots()
        xp.log_figure(other, "from-axes.png")  # an Axes; the suffix is the figure's name
        assert plt.get_fignums() == []  # closed after saving: a sweep leaks no figure
        xp.log_image("noise", np.linspace(0.0, 1.0, 12).reshape(3, 4))
        xp.log_image("pil.png", Image.new("RGB", (2, 2), "red"))
        (xp.dir / "straight.csv").write_text("a,b\\n1,2\\n")  # found without being logged
        xp.tags["model"] = "ridge"
        xp.tags.update({"seed-group": str(seed % 2)})
"""


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["no-xdist", "n2"])
def test_every_kind_of_artefact_is_written_and_registered(pytester: pytest.Pytester, xdist: list[str]) -> None:
    pytester.makepyfile(test_fit=EVERY_KIND)
    pytester.runpytest_subprocess(*xdist).assert_outcomes(passed=3)
    with Store.open(pytester.path / ".experiments", readonly=True) as store:
        runs = store.runs()
        assert len(runs) == 3
        for run in runs:
            seed = run.params["seed"]
            assert run.tags == {"model": "ridge", "seed-group": str(seed % 2)}
            found = {artifact.name: artifact for artifact in store.artifacts(run.run_id)}
            kinds = {name: (artifact.kind, artifact.media_type) for name, artifact in found.items()}
            assert kinds == {
                "model.bin": ("file", "application/octet-stream"),
                "copies/model-copy.bin": ("file", "application/octet-stream"),
                "raw.bin": ("file", "application/octet-stream"),
                "notes.txt": ("text", "text/plain"),
                "config.json": ("dict", "application/json"),
                "curve.png": ("figure", "image/png"),
                "curve.svg": ("figure", "image/svg+xml"),
                "from-axes.png": ("figure", "image/png"),
                "from-axes.svg": ("figure", "image/svg+xml"),
                "noise.png": ("image", "image/png"),
                "pil.png": ("image", "image/png"),
                "straight.csv": (None, "text/csv"),
            }
            assert found["model.bin"].size == len(b"weights") * seed
            assert (run.dir / "copies" / "model-copy.bin").read_bytes() == b"weights" * seed
            assert (run.dir / "raw.bin").read_bytes() == b"\x00\x01"
            assert (run.dir / "notes.txt").read_text(encoding="utf-8") == f"seed {seed} ✓"
            assert json.loads((run.dir / "config.json").read_text()) == {"seed": seed, "lr": 0.5, "layers": [1, 2]}
            for name in ("curve.png", "from-axes.png", "noise.png", "pil.png"):
                assert (run.dir / name).read_bytes().startswith(PNG), name
            assert b"<svg" in (run.dir / "curve.svg").read_bytes()
            assert all(artifact.size == (run.dir / name).stat().st_size for name, artifact in found.items())


HOSTILE = """
    import pytest

    @pytest.mark.experiment
    def test_names(xp, tmp_path):
        for name in ["../x", "../../escaped.txt", "a/../../x", "/tmp/abs.txt", "a\\\\b", "", "x\\0y", "a//b", "./a",
                     "dir/", "n" * 256]:
            for log in (lambda: xp.log_text(name, "x"), lambda: xp.log_artifact(b"x", name=name),
                        lambda: xp.log_dict(name, {}), lambda: xp.log_image(name, [[0]])):
                with pytest.raises(ValueError, match="the name .* give a file name such as"):
                    log()
        with pytest.raises(TypeError, match="a name must be a string"):
            xp.log_text(3, "x")
        xp.log_artifact(b"<png>", name='x" onerror="alert(1).png')
        xp.log_text("<script>alert(1)</script>", "text")
"""


def test_hostile_names_are_refused_and_odd_names_kept_as_they_are(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_names=HOSTILE)
    pytester.runpytest().assert_outcomes(passed=1)
    with Store.open(pytester.path / ".experiments", readonly=True) as store:
        [run] = store.runs()
        names = [artifact.name for artifact in store.artifacts(run.run_id)]
    assert names == ["<script>alert(1)</script>.txt", 'x" onerror="alert(1).png']
    # Nothing was written anywhere but the run folder.
    written = sorted(p.relative_to(pytester.path).as_posix() for p in pytester.path.rglob("*") if p.is_file())
    assert [p for p in written if not p.startswith((".experiments/", ".pytest_cache/"))] == ["test_names.py"]
    in_store = [p for p in written if p.startswith(".experiments/runs/")]
    assert len(in_store) == 2
    assert not (pytester.path / "escaped.txt").exists()


MISTAKES = """
    import sys
    import numpy as np
    import pytest

    @pytest.mark.experiment
    def test_mistakes(xp, tmp_path, monkeypatch):
        with pytest.raises(TypeError, match=r"expects a matplotlib Figure or Axes, or a plotly figure, not builtins.object"):
            xp.log_figure(object(), "fig")
        with pytest.raises(TypeError, match="expects a numpy array or a PIL image, not str"):
            xp.log_image("img", "pixels")
        with pytest.raises(ValueError, match=r"H x W.*not shape \\(2, 2, 2\\)"):
            xp.log_image("img", np.zeros((2, 2, 2)))
        with pytest.raises(ValueError, match="integer pixels must be 0 to 255"):
            xp.log_image("img", np.full((2, 2), 300))
        with pytest.raises(TypeError, match="expects a file path or bytes, not int .*xp.log_text"):
            xp.log_artifact(12)
        with pytest.raises(TypeError, match="bytes need a name"):
            xp.log_artifact(b"x")
        with pytest.raises(FileNotFoundError, match="no file"):
            xp.log_artifact(tmp_path / "missing.txt")
        with pytest.raises(ValueError, match="is a folder"):
            xp.log_artifact(tmp_path)
        with pytest.raises(TypeError, match="text must be a str"):
            xp.log_text("t", b"bytes")
        with pytest.raises(TypeError, match="expects a mapping"):
            xp.log_dict("d", [1, 2])
        with pytest.raises(TypeError, match="tag key"):
            xp.tags[1] = "x"
        with pytest.raises(TypeError, match="a value must be a string"):
            xp.tags["n"] = 1
        with pytest.raises(ValueError, match="at most 256"):
            xp.tags["long"] = "v" * 257
        with pytest.raises(ValueError, match="without '='"):
            xp.tags["a=b"] = "x"
        with pytest.raises(TypeError, match="tag key"):
            xp.tags = {"ok": "yes", 2: "no"}
        # Without Pillow and matplotlib, an array cannot become a PNG: the error names the extra.
        monkeypatch.setitem(sys.modules, "PIL", None)
        monkeypatch.setitem(sys.modules, "matplotlib", None)
        with pytest.raises(ImportError, match=r"needs Pillow or matplotlib: pip install 'pytest-experiments\\[plots\\]'"):
            xp.log_image("img", np.zeros((2, 2)))
        xp.tags = {"kept": "yes"}
"""


def test_mistakes_are_type_and_value_errors_that_say_what_to_do(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_mistakes=MISTAKES)
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    with Store.open(pytester.path / ".experiments", readonly=True) as store:
        [run] = store.runs()
        assert run.tags == {"kept": "yes"}
        assert store.artifacts(run.run_id) == []


def test_a_plotly_figure_is_an_html_fragment_and_hooks_log_too(pytester: pytest.Pytester) -> None:
    # A stand-in for plotly, recognised as plotly is: by its module name and its to_html.
    pytester.mkpydir("plotly")
    pytester.path.joinpath("plotly", "graph_objs.py").write_text(
        textwrap.dedent(
            """
            class Figure:
                def to_html(self, full_html=True, include_plotlyjs=True):
                    assert (full_html, include_plotlyjs) == (False, False)
                    return '<div id="plot">fragment</div>'
            """
        )
    )
    pytester.makeconftest(
        """
        def pytest_experiments_run_end(run):
            run.log_text("from-hook", run.status)
            run.tags["status-seen"] = run.status
        """
    )
    pytester.makepyfile(
        """
        import pytest
        from plotly.graph_objs import Figure

        @pytest.mark.experiment
        def test_plot(xp):
            xp.log_figure(Figure(), "interactive")
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)
    with Store.open(pytester.path / ".experiments", readonly=True) as store:
        [run] = store.runs()
        artifacts = {artifact.name: artifact for artifact in store.artifacts(run.run_id)}
    assert artifacts["interactive.html"].kind == "figure"
    assert artifacts["interactive.html"].media_type == "text/html"
    assert (run.dir / "interactive.html").read_text() == '<div id="plot">fragment</div>'
    assert (run.dir / "from-hook.txt").read_text() == "passed"
    assert run.tags == {"status-seen": "passed"}
