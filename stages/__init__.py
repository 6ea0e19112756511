"""One thin script per DVC stage: read params, call :mod:`pipeline`, write the outs."""
