"""phonekit's softphone on pjsua2 (issue #6); ``phone.engine`` is the only module that imports pjsua2."""
