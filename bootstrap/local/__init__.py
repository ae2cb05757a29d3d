"""This machine: its set-up (setup.sh, the S3A jars) and local stand-ins for AWS (an S3 server,
a fake EMR control plane and its nodes), all bound to 127.0.0.1."""
