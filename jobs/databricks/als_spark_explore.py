# Databricks notebook source
# MAGIC %md
# MAGIC # als-spark: one user, one movie
# MAGIC
# MAGIC Reads the tables a run of the pipeline wrote (`als-spark run`, or the `als_spark_daily` job of
# MAGIC this repository's bundle) and answers the questions of the classic recommender notebook for a
# MAGIC chosen id, with titles: what this user liked, what to recommend to them, which users are most
# MAGIC like them, and which movies are most like a given movie.
# MAGIC
# MAGIC Needs the `als_spark` wheel on the cluster. The bundle's job installs it; on an interactive
# MAGIC cluster install the wheel that `databricks bundle deploy` uploaded (or build one with
# MAGIC `python -m pip wheel --no-deps --wheel-dir dist .`), e.g.
# MAGIC `%pip install /Workspace/Users/<you>/.bundle/als_spark/dev/artifacts/.internal/als_spark-0.1.0-py3-none-any.whl`.
# MAGIC Nothing here needs `sparkContext`, so it also runs on serverless and standard-access compute.

# COMMAND ----------

# The same names as the job's parameters, which a job run passes in. A run writes
# <output_root>/run_date=<run_date>/; leave run_date empty to read <output_root> itself.
dbutils.widgets.text("output_root", "/Volumes/main/default/als_spark/out", "Output root")
dbutils.widgets.text("run_date", "2026-11-29", "Run date (YYYY-MM-DD)")
dbutils.widgets.text("user_id", "1", "User id")
dbutils.widgets.text("item_id", "1", "Movie id")

output_root = dbutils.widgets.get("output_root").rstrip("/")
run_date = dbutils.widgets.get("run_date").strip()
output = f"{output_root}/run_date={run_date}" if run_date else output_root
user_id = int(dbutils.widgets.get("user_id"))
item_id = int(dbutils.widgets.get("item_id"))

# COMMAND ----------

from pyspark.sql import functions as F

from als_spark import pipeline, publish
from als_spark import schema as S
from als_spark.session import get_spark
from als_spark.titles import with_title

spark = get_spark()  # the notebook's own session, used as it is
items = publish.read_table(spark, output, "items")

# COMMAND ----------

# MAGIC %md
# MAGIC ## The run

# COMMAND ----------

display(publish.read_table(spark, output, "dataset_summary"))

# COMMAND ----------

# MAGIC %md
# MAGIC ## What the user liked (the interactions ALS trained on)

# COMMAND ----------

liked = (
    publish.read_table(spark, output, "interactions")
    .where(F.col(S.USER_ID) == user_id)
    .transform(with_title, items)
    .orderBy(F.col(S.RATING).desc(), S.ITEM_ID)
    .select(S.ITEM_ID, S.TITLE, S.RATING)
)
display(liked)

# COMMAND ----------

# MAGIC %md
# MAGIC ## Recommendations for the user, and the users most like them

# COMMAND ----------

for caption, table in pipeline.show(spark, output, user=user_id):
    print(caption)
    display(table)

# COMMAND ----------

# MAGIC %md
# MAGIC ## Movies most like the chosen movie

# COMMAND ----------

for caption, table in pipeline.show(spark, output, item=item_id):
    print(caption)
    display(table)
