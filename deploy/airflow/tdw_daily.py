"""Airflow DAG: the Trackdéchets warehouse's daily run.

Copy this file into Airflow's dags/ folder on a worker where the project is checked out and
installed (`make install`), and set the connection strings as Airflow Variables or in the
worker's environment. `tdw run` is one command on purpose: it takes its own lock, logs every
step in meta.pipeline_runs, and publishes marts, replica and exports only when everything
succeeded, so a retry is always safe.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.bash import BashOperator

PROJECT_DIR = os.environ.get("TDW_PROJECT_DIR", "/opt/trackdechets-warehouse")

with DAG(
    dag_id="tdw_daily",
    description="Extract Trackdéchets production, build, test and publish the warehouse",
    schedule="30 3 * * *",  # 03:30 Europe/Paris, after the production replica's nightly maintenance
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=20)},
    tags=["trackdechets", "warehouse"],
) as dag:
    BashOperator(
        task_id="tdw_run",
        bash_command=f"cd {PROJECT_DIR} && .venv/bin/tdw run",
        env={
            "TDW_WAREHOUSE_DSN": "{{ var.value.tdw_warehouse_dsn }}",
            "TDW_SOURCE_DSN": "{{ var.value.tdw_source_dsn }}",
            "TDW_HOME": f"{PROJECT_DIR}/.tdw",
            "DO_NOT_TRACK": "1",
        },
        append_env=True,
        execution_timeout=timedelta(hours=4),
    )
