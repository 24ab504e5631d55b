"""``kd-generative`` commands beyond kd-core's ``distill``/``recipes``/``eval``: ``data build`` and ``prune``."""
