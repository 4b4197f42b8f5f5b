"""Audio checks: device inventory (issue #3 adds speaker, microphone and echo measurements)."""
