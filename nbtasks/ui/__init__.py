"""Rendering runs: text progress now, widgets later. Only observes runs."""
