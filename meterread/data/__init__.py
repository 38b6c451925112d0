"""Data tools: synthetic meter photos (`synth`) and real-crop reading strips (`strips`, `crops`)."""
