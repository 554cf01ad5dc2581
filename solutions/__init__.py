"""Reference solutions of the course: one module per assignment.

These modules are the single source of every graded function.  The
instructor notebooks are generated from them (``python -m autograder
notebooks``) and the grader compares learners' results with them.  They are
never copied into the learner notebooks or the built book.
"""
