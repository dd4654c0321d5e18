# ---
# jupyter:
#   kernelspec: {name: delab, display_name: "Python 3 (delab)", language: python}
# ---

# %% [markdown]
# # 00.01 · How a lab works
#
# **You will:**
# - run cells and read what they print;
# - answer an exercise and have it graded by a check;
# - see what a wrong answer looks like, and how a hint points you on;
# - see your progress, here and with `delab progress`.
#
# *Needs:* nothing but this notebook. About 10 minutes.

# %% [markdown]
# ## Cells
# A notebook is a list of cells. Markdown cells (like this one) explain; code cells run Python. Select a code
# cell and press **Shift+Enter** to run it: what the last line evaluates to is shown under the cell.
# Run the cells from top to bottom — later cells use what earlier cells defined.

# %%
from delab import check, datasets, grading

shop = datasets.shop(seed=7, scale=0.25)  # a small fictional web shop, the same on every machine
shop.orders.head()

# %% [markdown]
# `shop` holds six tables as pandas DataFrames: `customers`, `products`, `orders`, `order_items`, `payments`
# and `clicks`. Every lab of the course uses this shop (bigger or smaller), so it pays to know it.

# %%
{name: len(shop.table(name)) for name in shop.tables}

# %% [markdown]
# ## Exercises and checks
# An exercise is a code cell with a `...` placeholder. Replace the `...` with your answer and run the cell,
# then run the **check** cell under it. A check recomputes the right answer on its own and compares:
#
# - *Not solved yet* — the placeholder is still there;
# - *Wrong answer* — what is off, plus a hint that points the way without giving the answer;
# - *Passed* — and your progress is saved.
#
# ### Exercise 1 — orders per channel
# Orders come in through three channels: `web`, `app` and `marketplace`. Build a dict that maps each channel to
# the number of **distinct** orders placed through it. Careful: like many real extracts, `shop.orders` repeats a
# few rows.

# %%
### BEGIN SOLUTION
orders_per_channel = shop.orders.drop_duplicates("order_id").groupby("channel").order_id.count().to_dict()
### END SOLUTION
orders_per_channel

# %%
check.m00.orders_per_channel(orders_per_channel)

# %% [markdown]
# ## What a wrong answer looks like
# Checks answer in one line. `grading.try_answer` runs a check without recording anything, which is handy to see
# the feedback a tempting but wrong answer gets — here, counting rows instead of distinct orders:

# %%
counted_rows = shop.orders.groupby("channel").size().to_dict()
grading.try_answer(check.m00.orders_per_channel, counted_rows)

# %% [markdown]
# ### Exercise 2 — money actually collected
# `shop.payments` has one row per payment *attempt*. Some attempts failed, and returned orders were refunded.
# Compute `captured_revenue`: the total `amount` of the payments that were really captured, as a number.

# %%
### BEGIN SOLUTION
captured_revenue = round(shop.payments.loc[shop.payments.status == "captured", "amount"].sum(), 2)
### END SOLUTION
captured_revenue

# %%
check.m00.captured_revenue(captured_revenue)

# %% [markdown]
# ## Your progress
# Every check you run is saved locally (in the project's `.delab/` folder). The table below — and
# `delab progress` in a terminal, or `delab progress --html report.html` — shows where you stand.

# %%
grading.show_progress(module="00")

# %% [markdown]
# ## Recap
# - Run cells top to bottom with Shift+Enter; the last expression of a cell is displayed.
# - Replace `...` with your answer, then run the check under it; a wrong answer comes with a hint.
# - `delab progress` shows your scoreboard across the whole course.
#
# **Going further:** every lab follows this pattern. Next, [a first real data task with
# DuckDB](02_first_data_task_duckdb.ipynb).
