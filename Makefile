# stream_state — PGXS build
#
#   make && make install          build and install into the server found by pg_config
#   make installcheck             pg_regress, isolation and TAP suites, each on throwaway
#                                 instances (TAP_TESTS= / ISOLATION= / REGRESS= skip one)
#   bash scripts/test.sh          everything, including set-up (what CI runs)

EXTENSION = stream_state
MODULE_big = stream_state
OBJS = \
	src/stream_state.o \
	src/guc.o \
	src/shmem.o \
	src/window.o \
	src/emit.o \
	src/delta.o \
	src/capture.o \
	src/cq_analyze.o \
	src/cq_agg.o \
	src/cq_eval.o \
	src/cq_worker.o \
	src/cq_capture.o \
	src/cq_memory.o \
	src/query.o \
	src/store_memory.o \
	src/rocks.o \
	src/rocks_request.o \
	src/rocks_cache.o \
	src/checkpoint.o \
	src/checkpoint_table.o \
	src/wal_reader.o \
	src/worker.o \
	src/sql_api.o \
	src/sql_checkpoint.o

DATA = sql/stream_state--0.1.0.sql sql/stream_state--0.1.0--0.2.0.sql \
	sql/stream_state--0.2.0--0.3.0.sql sql/stream_state--0.3.0--0.4.0.sql \
	sql/stream_state--0.4.0--0.5.0.sql sql/stream_state--0.5.0--0.6.0.sql \
	sql/stream_state--0.6.0--0.7.0.sql
PGFILEDESC = "stream_state - keyed streaming state"

REGRESS = setup errors exactness transactions keys classed_keys store windows privileges backends \
	read_cache cq_analyze cq_evaluate alter_query cq_queries cq_statements cq_emit cq_retention cq_sessions cq_late
REGRESS_OPTS = --temp-instance=./tmp_check --temp-config=$(srcdir)/test/stream_state.conf \
	--load-extension=stream_state

# The same tests once more with every query on the rocksdb backend
# (stream_state.default_backend = rocksdb), except store, which looks at
# the memory store itself, read_cache, which names its backends, and
# cq_analyze and cq_evaluate, which keep no state; and the isolation specs.
# Same expected output: the backend must not show.
REGRESS_ROCKSDB = $(filter-out store read_cache cq_analyze cq_evaluate,$(REGRESS))

ISOLATION = concurrent_writers concurrent_writers_sql create_during_inserts rebuild_during_inserts rebuild_sql_during_inserts
ISOLATION_OPTS = --temp-instance=./tmp_check_iso --temp-config=$(srcdir)/test/stream_state.conf \
	--inputdir=test/isolation --outputdir=test/isolation/output_iso --load-extension=stream_state

TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

PG_CPPFLAGS += -I$(srcdir)/src
SHLIB_LINK += -lrocksdb

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

installcheck-rocksdb:
	$(pg_regress_installcheck) --temp-instance=./tmp_check_rocksdb \
		--temp-config=$(srcdir)/test/stream_state.conf --temp-config=$(srcdir)/test/rocksdb.conf \
		--load-extension=stream_state --inputdir=$(srcdir) --outputdir=test/output_rocksdb $(REGRESS_ROCKSDB)
	$(pg_isolation_regress_installcheck) --temp-instance=./tmp_check_iso_rocksdb \
		--temp-config=$(srcdir)/test/stream_state.conf --temp-config=$(srcdir)/test/rocksdb.conf \
		--inputdir=test/isolation --outputdir=test/isolation/output_iso_rocksdb \
		--load-extension=stream_state $(ISOLATION)

.PHONY: installcheck-rocksdb

# every object is rebuilt when any of our headers changes (shared structs)
$(OBJS): $(wildcard $(srcdir)/src/*.h)
