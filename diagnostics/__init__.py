"""Checks of a workstation's audio, network and SIP path, each ending in a plain-words verdict."""
