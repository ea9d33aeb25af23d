"""The operator's room: the ``mlreactor`` CLI, the simulated chain, dead-letter redrive and the HTTP views.

Everything here sits on top of the engine and may import any of ``shared``; nothing else in ``shared`` imports it.
"""
