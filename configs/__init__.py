"""tingbao.configs — the templates and examples a deployment starts from, shipped as package
data so that an installed tingbao (not only a checkout) finds them.

* ``mosquitto.conf.template``, ``influxdb.conf.template``: the broker and database configs of
  the local stack; ``$name`` placeholders are filled in by :mod:`tingbao.collector.stack`.
* ``site.example.toml``, ``agent.example.toml``, ``collector.example.toml``: examples of the
  site registry, an edge agent and a collector, to copy and edit.

Read them with ``importlib.resources.files("tingbao.configs") / NAME``.
"""
