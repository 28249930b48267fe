"""The subcommands of `retail-assets`, by what they are for: `local.py` (the main job, the UI,
the data), `sql.py` (SQL access for analysts), `streaming.py` (the broker, the stream, the
measurements), `database.py` (the operational database), `deploy.py` (Databricks); `options.py` what they share. Options and help sit
beside each command, the work in the pipeline's and the tooling's modules.

Every command runs its preflight checks (`tooling/cli/preflight.py`) before it creates, deletes or
starts anything.
"""

from retail_assets.tooling.cli.commands.database import database
from retail_assets.tooling.cli.commands.deploy import grants, provision
from retail_assets.tooling.cli.commands.local import demo, generate, ui
from retail_assets.tooling.cli.commands.sql import sql_command
from retail_assets.tooling.cli.commands.streaming import bench, broker, latency, produce

COMMANDS = [demo, ui, generate, sql_command, broker, database, produce, latency, bench, grants, provision]
