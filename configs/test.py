"""Tiny, seconds on a CPU: 3 classes of Vertebrate, 60 items, few workers, short fits."""

from jaxanno import config


def get_config():
    cfg = config.default_config()
    cfg.wnids = "n02138441 n02326432 n01558993"
    cfg.n_data_per_class = 20
    cfg.n_prototype_per_class = 4
    cfg.data.feature_dim = 8
    cfg.worker.n = 6
    cfg.online.hit_size = 6
    cfg.online.n_hits_per_step = 2
    cfg.learner.hidden_size = 8
    cfg.learner.batch_size = 16
    cfg.learner.max_epochs = 20
    cfg.learner.eval_every = 5
    cfg.run.num_seeds = 2
    cfg.run.chunk_steps = 5
    cfg.run.checkpoint_every = 5
    return cfg
