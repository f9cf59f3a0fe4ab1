"""What a publish's outcome means for the message: only a message that can never be
sent may be dropped; a connection lost during the send means "not sent yet"."""

from __future__ import annotations

import paho.mqtt.client as paho
import pytest

from edge_runtime.errors import TransportError
from edge_runtime.transport.mqtt import publish_result


@pytest.mark.parametrize(
    "rc",
    [paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN, paho.MQTT_ERR_CONN_LOST],
)
def test_a_connection_lost_during_the_send_keeps_the_message(rc):
    # the client holds a QoS 1 message it returned any of these for, and sends it on
    # reconnect with the same id: the caller waits for that id's acknowledgement
    assert publish_result("edge/d/predictions", rc, 17) == 17


def test_a_full_client_queue_means_offer_it_again_later():
    assert publish_result("edge/d/predictions", paho.MQTT_ERR_QUEUE_SIZE, 17) is None


@pytest.mark.parametrize(
    "rc", [paho.MQTT_ERR_PAYLOAD_SIZE, paho.MQTT_ERR_INVAL, paho.MQTT_ERR_NOT_SUPPORTED]
)
def test_only_a_message_that_can_never_be_sent_is_refused(rc):
    with pytest.raises(TransportError, match="edge/d/predictions"):
        publish_result("edge/d/predictions", rc, 17)
