"""Training: the shared data (:mod:`.data`), crops (:mod:`.crops`) and attention maps
(:mod:`.attention_maps`), the seed-000 classifier job (:mod:`.classifier`), its evaluation
(:mod:`.evaluate`) and a planted dataset for tests and demos (:mod:`.synthetic`).

Nothing is imported here: ``import headless.train`` stays cheap; the worker imports the job
module it runs. Job families to come (``fgvc/`` for IELT, ``ssl/`` for DINO) sit beside
``classifier/`` and reuse the data, crops and attention maps.
"""
