"""Training jobs: the data (:mod:`.data`), the seed-000 classifier (:mod:`.classifier`), its
evaluation (:mod:`.evaluate`) and a planted dataset for tests and demos (:mod:`.synthetic`).

Nothing is imported here: ``import headless.train`` stays cheap; the worker imports the job
module it runs.
"""
