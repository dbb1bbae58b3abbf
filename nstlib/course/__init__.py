"""Course tooling for instructors and maintainers (students never need it).

==========  ====================================================================
``batch``   papermill batches: one notebook over a grid of parameters, a comparison figure and table
``book``    the course book (Jupyter Book 1.x) and the notebooks' checked outputs
==========  ====================================================================

Both are driven by the command line (``nstlib batch``, ``nstlib book``); they work on a checkout of
the course found from the current folder (:func:`nstlib.course.book.course_root`).
"""
