"""The SIP edge at work: `voiceop edge render` (offline) and `voiceop edge sync` (beside Kamailio)."""
