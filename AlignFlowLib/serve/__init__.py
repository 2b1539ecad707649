"""`alignflow serve`: the browser front end (trame + trame-slicer), for a GPU server that radiologists reach from a
browser. Real Slicer slice and 3-D views are rendered headless on the server and streamed to the page.

Layers, so that most of it is testable without a browser:

- `security`: which folders and uploads the page may touch, and which addresses need a token (pure Python);
- `jobs`: the training run and its preview syntheses as CLI subprocesses (never in the render process);
- `run_view`: what a run folder holds for the page (pairs, references, curve, report);
- `app`: the trame page; the only module that imports trame. What it shows in the scene is the MRML bridge's
  (`mrml.display`), so the Slicer imports stay there and in trame-slicer.
"""
