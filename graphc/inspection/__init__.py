"""Seeing what graphc did: the IR printer and parser, the verifier, the views of compiled
functions (text, DOT/SVG, HTML report) behind the one entry point `gc.dump`
(graphc/inspection/dump.py), and the debugging modes' hooks into Function (debug.py)."""
