"""The SIP edge's configuration, pure: Kamailio's files from the routes table and the media
endpoints (config), endpoints from EndpointSlices or Pods (endpoints), caller numbers to
countries (callers). `voiceop.edge` writes them and keeps a running Kamailio in step."""
