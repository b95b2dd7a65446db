"""Dataset-scale inference: the interactive commands as sharded, resumable batch jobs.

``dinoseg boxes|sam|features|segment|attention-maps ... --runner local|torchrun|slurm`` builds a
:class:`~headless.batch.spec.BatchSpec` and starts it through the same runners as training
(:mod:`headless.jobs.runners`). The image list is sorted by path and split into shards
(:mod:`.shards`); each shard appends one JSON record per finished image to its own file
(:mod:`.records`), keyed by path, mtime, size and the settings, so a killed or pre-empted shard
resumes where it stopped. A :mod:`.loader` decodes and resizes images in worker processes while
the model runs, in batches of equal network-input shape. When every shard is done the records
are merged (:mod:`.merge`) into the very files the interactive command writes.

What a command does per image and how its outputs are written is its :mod:`.tasks` entry; the
per-image work is the interactive engine's own function, so a batch run and an interactive run
give the same result.
"""
