"""globattn-lite: a small helper package for a course on global tokens in attention.

Layers only look down:

    patterns (numpy)  ->  attention, softmax_tools, costs  ->  tiny / experiments (torch), plot (matplotlib)
                      ->  widgets (ipywidgets)

Import the submodule you need (``from globattn_lite import patterns``); this package
imports nothing heavy on its own, so ``import globattn_lite`` stays fast and needs no display.

Conventions used everywhere: indices are 0-based, and ``mask[q, k] is True`` means query
``q`` may attend to key ``k`` (as in PyTorch FlexAttention's ``mask_mod``).
"""

__version__ = "0.1.0"
