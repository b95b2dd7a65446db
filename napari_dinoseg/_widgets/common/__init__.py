"""What every dock repeats: layer conversions and picking (image combos kept in sync), model
caches, workers with busy state and error line, notices, and the Qt field builders.
"""
