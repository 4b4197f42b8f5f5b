"""Root conftest: the real test bed's fixtures (PulseAudio scenes, Kamailio, coturn, baresip) for every test."""

pytest_plugins = [
    "tests.testbed.netns",  # first: coturn imports it
    "tests.testbed.pulse",
    "tests.testbed.kamailio",
    "tests.testbed.coturn",
    "tests.testbed.baresip",
    "tests.testbed.sipbed",
    "tests.testbed.dnsmasq",
]
