"""
notebooks/getting_started.ipynb: executed top to bottom by nbclient in a Jupyter kernel of this
interpreter, as a user runs it, on the models of the main jobs' --quick runs (each step's cell
checks what it shows); a failing cell fails the run; the committed notebook has no outputs and
an executed one stays small.
"""
import base64
import os
from pathlib import Path

import nbformat
import pytest
from ipykernel.kernelspec import install as install_kernelspec
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO_ROOT / "notebooks" / "getting_started.ipynb"
KERNEL_NAME = "mask2former-tests"
# The executed notebook, pictures included, and each picture in it (bytes).
MAX_EXECUTED_BYTES = 1_000_000
MAX_PICTURE_BYTES = 150_000


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """
    A Jupyter kernel spec that runs this interpreter (the venv's python), found first through
    JUPYTER_PATH whatever kernels the machine has; yields its name.
    """
    prefix = tmp_path_factory.mktemp("jupyter")
    install_kernelspec(kernel_name=KERNEL_NAME, prefix=str(prefix))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
        yield KERNEL_NAME


def execute(notebook, kernel_name, cwd, env):
    """Run every cell in order in a new kernel started in ``cwd``; the first failure raises."""
    client = NotebookClient(notebook, timeout=600, kernel_name=kernel_name,
                            resources={"metadata": {"path": str(cwd)}})
    client.execute(env=env)


def test_committed_notebook_has_no_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code_cells
    for cell in code_cells:
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:200]


def test_a_failing_cell_fails_the_run(kernel, tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("value = 1"),
        nbformat.v4.new_code_cell("assert value == 2, 'the check of this cell failed'"),
        nbformat.v4.new_code_cell("open('reached', 'w').close()"),
    ])
    with pytest.raises(CellExecutionError, match="the check of this cell failed"):
        execute(notebook, kernel, tmp_path, dict(os.environ))
    assert not (tmp_path / "reached").exists()


def _pictures(notebook):
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            for mime, data in output.get("data", {}).items():
                if mime.startswith("image/"):
                    yield base64.b64decode(data)


def test_notebook_runs_top_to_bottom(kernel, quick_run, quick_video_run, tmp_path):
    main_job, data_root, _ = quick_run
    output = tmp_path / "output"
    env = dict(
        os.environ,
        MASK2FORMER_MAIN_JOB=str(main_job),
        MASK2FORMER_MAIN_JOB_VIDEO=str(quick_video_run[0]),
        MASK2FORMER_NOTEBOOK_OUTPUT=str(output),
        DETECTRON2_DATASETS=str(data_root.parents[1]),
    )
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    try:
        execute(notebook, kernel, NOTEBOOK.parent, env)
    finally:
        nbformat.write(notebook, tmp_path / NOTEBOOK.name)  # to look at after a failure

    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code_cells] == list(range(1, len(code_cells) + 1))
    for path in ("demo", "train/model_final.pth", "train/training_curves.png",
                 "own_data/yolo/my_shapes.yaml", "own_data/fine_tune/model_final.pth",
                 "export/model.onnx", "demo_video/clip"):
        assert (output / path).exists(), path
    pictures = list(_pictures(notebook))
    assert len(pictures) >= 5
    assert max(len(picture) for picture in pictures) < MAX_PICTURE_BYTES
    assert (tmp_path / NOTEBOOK.name).stat().st_size < MAX_EXECUTED_BYTES
