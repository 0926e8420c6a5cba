"""Handler bodies; registration lives in ``nsm_operator.main``."""
