"""The docks, one folder each (a thin Qt panel + plain-Python parts), and what they share
(:mod:`.common`: layer naming, workers and error reporting, Qt field builders).
"""
