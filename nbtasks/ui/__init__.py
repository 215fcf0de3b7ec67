"""Showing work as it goes: a run's live progress tree, parameter forms and a cluster's
engines (ipywidgets) in a notebook, a text bar (tqdm) in scripts.

Views observe runs and act on them only as a user could (a form submits, Cancel
cancels); ipywidgets is imported where a widget is made, so text progress needs none.
"""
