"""tingbao.edge — turns audio into levels on the device beside the sound meter.

Imports only numpy and scipy (plus sounddevice / soundfile / paho-mqtt where a source or
the publisher needs them). Collector and analysis may import from here; never the reverse.
"""
