"""Small notebooks written by tests (for papermill batches and the book's gallery)."""

import nbformat

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def write_notebook(path, cells):
    """Write a notebook of code cells, each given as ``(source, tags)``, to ``path``; returns ``path``."""
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": KERNELSPEC})
    for source, tags in cells:
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["tags"] = tags
        nb.cells.append(cell)
    path.write_text(nbformat.writes(nb))
    return path
