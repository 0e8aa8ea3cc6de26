TRANSITION_TOPIC = "alerts.transition"


def alerts_write_batch(outcome):
    pass


def transition_recorded(payload):
    pass
