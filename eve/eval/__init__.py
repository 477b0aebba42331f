"""Evaluation of video edits (issue 13): `python -m eve.eval` runs methods over a benchmark's edit list (eve's
manifest, TGVE / TGVE+), writes every edited video and scores it with the paper's Table 1 metrics and newer ones."""
