# SPDX-License-Identifier: GPL-2.0-or-later
"""netxfw host agent: the `netxfw` CLI, the API and Web UI on :11811, Prometheus metrics.

Built on the engine (plugins/module_utils, deployed as the package `netxfw_engine`);
it holds no firewall logic of its own.
"""

__version__ = "0.1.0"
