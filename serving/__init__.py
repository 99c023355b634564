"""Serving the pushed model with TF Serving: the prediction client (`predict`), the requests it
and the warmup file send (`requests`, `warmup`), and the server's configuration files
(`server_config`: models, version policy and labels, batching, monitoring)."""
