"""HTTP ports of the peers the tests start (Orthanc's REST API): 18200-18299, the first free."""

from tests.ports import PortRange

PORTS = range(18200, 18300)
free_http_port = PortRange(PORTS)
