//! The web console served at `/`: one page, part of the binary, that calls the REST API.
