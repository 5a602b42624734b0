"""What the tests share: fixtures, helpers and waits. Test modules import from here, never from
each other.

=================  ===========================================================================
``wait``           :func:`wait_for` (poll a condition, fail naming it), :func:`hold` (a pause
                   that is part of the test, with the reason)
``stack``          fixtures ``stack`` / ``fresh_stack`` (real Mosquitto + InfluxDB);
                   ``influx_query``, ``influx_write`` through the project's InfluxClient
                   (``stack.influx(role)``)  (plugin)
``pulse``          fixture ``pulse_server``: a private PulseAudio server  (plugin)
``mqtt``           ``mqtt_client``, ``publish``, ``subscribe``, ``drain``, ``close``,
                   ``MqttRefused``; ``Publisher`` (a device with 1000 messages in flight)
``configs``        ``write_toml``; the agent's ``make_config`` (``ENT``, ``SITE``); the
                   collector's ``write_collector_config``
``commands``       the ``tingbao`` command as a child (``tingbao``, ``run_tingbao``),
                   ``free_port``, a collector's ``metrics``
``collector``      ``start_collector`` (in-process), ``collector_process`` (a child)
``agent``          ``outbox_depth``
``levels``         ``steady_levels``: stored 1 s points of a steady level, written directly
=================  ===========================================================================
"""
