%%% @doc The NIF library (native/hb_beamr_nif). Every function queues a command for
%%% an instance's executor thread, waits a few microseconds for the outcome and returns
%%% it directly (`{event, ...}') when it comes that fast; otherwise it returns
%%% `{wait, Id}' and the outcome arrives as a message `{hb_beamr, Id, Event}'.
%%% Use `hb_beamr' and `hb_beamr_io', not this.
-module(hb_beamr_nif).

-export([start/3, call/3, call/4, import_reply/3, import_exception/3, import_failed/1, stop/1, gas_used/1]).
-export([compile/2, cache_stats/0]).
-export([call_async/5, async_reply/2, async_exception/2, async_fail/2, async_pending/1, async_posted/1, info/1]).
-export([memory_size/1, memory_read/3, memory_write/3, memory_read_string/3,
         memory_snapshot/1, memory_restore/2]).
-export([state_snapshot/2, state_restore/2, snapshot_info/1, kernel_dirty_tracking/0]).
-export([inspect/2, nif_cpu_time/1, nif_cpu_time_control/1]).
-export([hibernate/1, stats/0]).

-on_load(init/0).

-type id() :: non_neg_integer().
%% Tags the messages of one request: `{hb_beamr, Id, Event}'.
-type queued() :: {event, id(), term()} | {wait, id()} | {error, term()}.
%% A request's outcome when it came at once (`event'), or the tag of the message it will
%% come in (`wait').
-type call() :: reference().
%% A call in progress, as import requests carry it, to answer them.
-type event() :: {ok, list()} | {error, term()}
               | {import, call(), non_neg_integer(), string(), string(), string(), list()}.
%% The next event of a call: its result, or an import request (call, index, module,
%% name, signature, arguments).
-export_type([id/0, queued/0, event/0]).

-spec init() -> ok | {error, term()}.
init() ->
    erlang:load_nif(filename:join(priv_dir(), "libhb_beamr_nif"), 0).

priv_dir() ->
    case code:priv_dir(hb_beamr) of
        {error, bad_name} ->
            filename:join(filename:dirname(filename:dirname(code:which(?MODULE))), "priv");
        Dir ->
            Dir
    end.

%% @doc Queues the start of an instance owned by `Owner' (the owner process of
%% hb_beamr:start/2); the result is the first event: imports and exports.
-spec start(pid(), binary(), map()) ->
    {ok, id(), list(), list()} | {error, term()}.
start(_Owner, _Wasm, _Opts) -> erlang:nif_error(not_loaded).

%% @doc Compiles (or loads from the caches) and serializes into an artifact.
-spec compile(binary(), map()) -> {ok, binary()} | {error, term()}.
compile(_Wasm, _Opts) -> erlang:nif_error(not_loaded).

%% @doc How modules were obtained since the VM started: compiled, found in memory, loaded from
%% the disk cache, loaded from an artifact.
-spec cache_stats() -> #{compiled | memory_hits | disk_hits | artifact_loads => non_neg_integer()}.
cache_stats() -> erlang:nif_error(not_loaded).

%% @doc Queues a call of an export (or an integer: entry of table 0).
-spec call(pid(), binary() | string(), list()) ->
    {event, id(), event()} | {wait, id()} | {error, term()}.
call(_Instance, _Func, _Args) -> erlang:nif_error(not_loaded).

%% @doc call/3 with call options (`timeout', `gas').
-spec call(pid(), binary() | string(), list(), map()) ->
    {event, id(), event()} | {wait, id()} | {error, term()}.
call(_Instance, _Func, _Args, _Opts) -> erlang:nif_error(not_loaded).

%% @doc Queues an asynchronous call whose events come as messages in `Protocol' (see
%% hb_beamr:call_async/4 and wasm_send/2), tagged with `Ref'. `Message' is the first of
%% them when it came at once: the caller sends it to itself.
-spec call_async(pid(), binary() | string() | integer(), list(), map(), async | seed) ->
    {ok, reference()} | {ok, reference(), term()} | {error, term()}.
call_async(_Instance, _Func, _Args, _Opts, _Protocol) -> erlang:nif_error(not_loaded).

%% @doc Answers the pending import of an asynchronous call; `Message' as for call_async/5.
-spec async_reply(reference(), list()) -> ok | {ok, term()} | {error, term()}.
async_reply(_Ref, _Results) -> erlang:nif_error(not_loaded).

%% @doc Throws `Reason' at the pending import of an asynchronous call, to the nearest
%% Emscripten `invoke_*'; returns like `async_reply/2'.
-spec async_exception(reference(), term()) -> ok | {ok, tuple()} | {error, badarg}.
async_exception(_Ref, _Reason) -> erlang:nif_error(not_loaded).

%% @doc Fails the pending import of an asynchronous call: the call traps with `Why'.
-spec async_fail(reference(), term()) -> ok | {error, badarg}.
async_fail(_Ref, _Why) -> erlang:nif_error(not_loaded).

%% @doc Whether an import of the asynchronous call waits for this process's answer.
-spec async_pending(reference()) -> boolean().
async_pending(_Ref) -> erlang:nif_error(not_loaded).

%% @doc The message that `call_async/5' or `async_reply/2' returned for `Ref' has been sent to
%% the caller itself: the call's next messages may follow it.
-spec async_posted(reference()) -> ok.
async_posted(_Ref) -> erlang:nif_error(not_loaded).

%% @doc The instance's `hb_beamr:info()'.
-spec info(pid()) -> {ok, map()} | {error, stopped}.
info(_Instance) -> erlang:nif_error(not_loaded).

%% @doc The fuel the instance's last call used.
-spec gas_used(pid()) -> {ok, non_neg_integer()} | {error, stopped}.
gas_used(_Instance) -> erlang:nif_error(not_loaded).

%% @doc Answers import `Index' of `Call' with `Results' (only its caller may, once).
-spec import_reply(call(), non_neg_integer(), list()) -> {event, id(), event()} | {wait, id()} | {error, term()}.
import_reply(_Call, _Index, _Results) -> erlang:nif_error(not_loaded).

%% @doc Throws `Reason' at the pending import `Index' of `Call', to the nearest Emscripten
%% `invoke_*' (without one the call ends with `{trap, exception, Reason}'); returns like
%% `import_reply/3'.
-spec import_exception(call(), non_neg_integer(), term()) -> {event, id(), event()} | {wait, id()} | {error, term()}.
import_exception(_Call, _Index, _Reason) -> erlang:nif_error(not_loaded).

%% @doc Fails the pending import of `Call': the call ends with `import_failed'.
-spec import_failed(call()) -> ok | {error, badarg}.
import_failed(_Call) -> erlang:nif_error(not_loaded).

%% @doc Stops the instance owned by this pid, if it is one; running wasm traps at its
%% next check.
-spec stop(pid()) -> ok.
stop(_Instance) -> erlang:nif_error(not_loaded).

%% @doc Queues a read of memory 0's size in bytes.
-spec memory_size(pid()) -> queued().
memory_size(_Instance) -> erlang:nif_error(not_loaded).

%% @doc Queues a read of `Len' bytes of memory 0 at `Offset'.
-spec memory_read(pid(), non_neg_integer(), non_neg_integer()) -> queued().
memory_read(_Instance, _Offset, _Len) -> erlang:nif_error(not_loaded).

%% @doc Queues a write of `Data' into memory 0 at `Offset'.
-spec memory_write(pid(), non_neg_integer(), binary()) -> queued().
memory_write(_Instance, _Offset, _Data) -> erlang:nif_error(not_loaded).

%% @doc Queues a read of the NUL-terminated string at `Ptr'.
-spec memory_read_string(pid(), non_neg_integer(), non_neg_integer()) -> queued().
memory_read_string(_Instance, _Ptr, _Max) -> erlang:nif_error(not_loaded).

%% @doc Queues a copy of memory 0 (the seed's raw format, `hb_beamr:serialize/1').
-spec memory_snapshot(pid()) -> queued().
memory_snapshot(_Instance) -> erlang:nif_error(not_loaded).

%% @doc Queues a write of a raw memory copy over memory 0 (`hb_beamr:deserialize/2').
-spec memory_restore(pid(), binary()) -> queued().
memory_restore(_Instance, _Data) -> erlang:nif_error(not_loaded).

%% @doc The whole state (memory 0, mutable globals, every table) in the snapshot format; with
%% `Incremental', a delta of what changed since the instance's last snapshot or restore.
-spec state_snapshot(pid(), boolean()) -> queued().
state_snapshot(_Instance, _Incremental) -> erlang:nif_error(not_loaded).

%% @doc Restores a chain: a full snapshot, then its deltas.
-spec state_restore(pid(), [binary()]) -> queued().
state_restore(_Instance, _Chain) -> erlang:nif_error(not_loaded).

%% @doc Whether incremental snapshots can use the kernel's write tracking in this VM
%% (userfaultfd, Linux 6.7+); otherwise they compare page digests.
-spec kernel_dirty_tracking() -> boolean().
kernel_dirty_tracking() -> erlang:nif_error(not_loaded).

%% @doc What a snapshot's header says, once its checksum verified.
-spec snapshot_info(binary()) -> {ok, map()} | {error, term()}.
snapshot_info(_Snapshot) -> erlang:nif_error(not_loaded).

%% @doc What wasm or WAT declares (imports and exports of every kind, memories) and which
%% preparation passes it needs under start options `Opts', without compiling it.
-spec inspect(binary(), map()) -> {ok, map()} | {error, term()}.
inspect(_Source, _Opts) -> erlang:nif_error(not_loaded).

%% @doc For benchmarks: what the NIFs that wait for an executor (call, import_reply,
%% memory operations) did since the last switch: how many ran (`timed'), the longest time
%% one of them kept its core (thread CPU time, `max_cpu_ns'), how many kept it over 100 us,
%% and how many took over 100 us by the wall clock, of which how many the OS preempted
%% (an involuntary context switch) and how many blocked (a voluntary one). `On' starts
%% (true) or stops (false) the counting and resets the totals; while it is on, each such
%% NIF costs three more system calls, and one over 100 us a fourth.
-spec nif_cpu_time(boolean()) -> #{timed := non_neg_integer(), max_cpu_ns := non_neg_integer(),
                                   over_100us_cpu := non_neg_integer(), over_100us_wall := non_neg_integer(),
                                   preempted := non_neg_integer(), blocked := non_neg_integer()}.
nif_cpu_time(_On) -> erlang:nif_error(not_loaded).

%% @doc For benchmarks: a NIF that only spins `Ns' nanoseconds (at most 20 us), counted
%% by `nif_cpu_time/1' like the waiting NIFs. It can neither wait nor block, so what the
%% counts show for it under a load is what that load does to any NIF of that length.
-spec nif_cpu_time_control(non_neg_integer()) -> ok.
nif_cpu_time_control(_Ns) -> erlang:nif_error(not_loaded).

%% @doc Queues a request to hibernate (`{event, 0, ok}' when the instance already is).
-spec hibernate(pid()) -> queued().
hibernate(_Instance) -> erlang:nif_error(not_loaded).

%% @doc Node-wide hibernation and compile-cache counts (`hb_beamr:stats/0').
-spec stats() -> map().
stats() -> erlang:nif_error(not_loaded).
