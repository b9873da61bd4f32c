"""Reports for people: what voiceop and the media pods saw (`voiceop handoffs`)."""
