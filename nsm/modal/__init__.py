"""Modal as an alternative target: run the NSM trainer as a Modal Function.

* :mod:`nsm.modal.mapping` — pure spec → Modal function options (GPU, CPU, memory, timeout,
  retries within Modal's limits, Volume); no Modal import.
* :mod:`nsm.modal.app` — ``build_app(spec)`` → ``(modal.App, modal.Function)`` and the Function
  body that runs ``nsm train`` against the Volume.
* :mod:`nsm.modal.runner` — the trainer subprocess, Volume commits after every checkpoint and the
  fence that stops a superseded call from training.
* :mod:`nsm.modal.bridge` — the small interface the operator and the CLI use (deploy, spawn, poll,
  cancel, read files), with a deadline on every call and redacted credentials.

Importing this package is cheap and never imports ``modal``; the SDK is imported only where a
Modal object is built or a server is called (``pip install nsm-operator[modal]``).
"""
