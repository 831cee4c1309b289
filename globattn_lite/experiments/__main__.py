"""``python -m globattn_lite.experiments NAME``: train experiment NAME (see ``registry.main``)."""

from .registry import main

main()
