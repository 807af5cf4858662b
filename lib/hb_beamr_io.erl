%%% @doc Memory access for `hb_beamr' instances, API-compatible with HyperBEAM's
%%% `hb_beamr_io'. Every function works between calls and from inside an import fun of
%%% the same instance (the executor serves the process handling the import).
-module(hb_beamr_io).

-export([size/1, read/3, write/3, read_string/2, read_string/3, write_string/2, malloc/2, free/2]).
-export([snapshot/1, restore/2]).
%% Runs a request on the instance's node; not part of the API.
-export([request/3]).

%% size/1 is this module's own (memory 0's size), not erlang:size/1.
-compile({no_auto_import, [size/1]}).

-define(MAX_U64, 16#FFFFFFFFFFFFFFFF).
-define(is_offset(X), (is_integer(X) andalso X >= 0 andalso X =< ?MAX_U64)).
%% How far `read_string/2' looks for the NUL: a string is copied whole, so the module
%% must not decide how much the caller receives.
-define(READ_STRING_MAX, 64 * 1024 * 1024).

%% @doc The size of memory 0 in bytes (0 when the module has no memory).
-spec size(hb_beamr:instance()) -> {ok, non_neg_integer()} | {error, term()}.
size(Instance) when is_pid(Instance) ->
    request(Instance, memory_size, []);
size(Instance) ->
    {error, {badarg, {instance, Instance}}}.

%% @doc `Len' bytes of memory 0 from `Offset'; out of bounds gives `{error, _}'.
-spec read(hb_beamr:instance(), non_neg_integer(), non_neg_integer()) ->
    {ok, binary()} | {error, term()}.
read(Instance, Offset, Len) when is_pid(Instance), ?is_offset(Offset), ?is_offset(Len) ->
    request(Instance, memory_read, [Offset, Len]);
read(Instance, Offset, Len) ->
    {error, {badarg, {read, Instance, Offset, Len}}}.

%% @doc Writes `Data' into memory 0 at `Offset'; out of bounds gives `{error, _}' and
%% writes nothing.
-spec write(hb_beamr:instance(), non_neg_integer(), binary()) -> ok | {error, term()}.
write(Instance, Offset, Data) when is_pid(Instance), ?is_offset(Offset), is_binary(Data) ->
    request(Instance, memory_write, [Offset, Data]);
write(Instance, Offset, Data) ->
    {error, {badarg, {write, Instance, Offset, Data}}}.

%% @doc The bytes at `Ptr' up to the first NUL, which must come within 64 MiB
%% (`read_string/3' with that maximum).
-spec read_string(hb_beamr:instance(), non_neg_integer()) -> {ok, binary()} | {error, term()}.
read_string(Instance, Ptr) ->
    read_string(Instance, Ptr, ?READ_STRING_MAX).

%% @doc The bytes at `Ptr' up to the first NUL, which must come within `Max' bytes:
%% `{error, {string_too_long, Ptr, Max}}' otherwise, and
%% `{error, {out_of_bounds, Ptr, unterminated, Size}}' when memory ends first.
-spec read_string(hb_beamr:instance(), non_neg_integer(), non_neg_integer()) ->
    {ok, binary()} | {error, term()}.
read_string(Instance, Ptr, Max) when is_pid(Instance), ?is_offset(Ptr), ?is_offset(Max) ->
    request(Instance, memory_read_string, [Ptr, Max]);
read_string(Instance, Ptr, Max) ->
    {error, {badarg, {read_string, Instance, Ptr, Max}}}.

%% @doc Copies `Data' and a terminating NUL into memory obtained from the module's
%% `malloc'.
-spec write_string(hb_beamr:instance(), iodata()) -> {ok, non_neg_integer()} | {error, term()}.
write_string(Instance, Data) ->
    try iolist_to_binary([Data, 0]) of
        Bin -> write_new(Instance, Bin)
    catch
        error:badarg -> {error, {badarg, {write_string, Data}}}
    end.

write_new(Instance, Bin) ->
    case malloc(Instance, byte_size(Bin)) of
        {ok, Ptr} ->
            case write(Instance, Ptr, Bin) of
                ok -> {ok, Ptr};
                {error, Reason} -> {error, Reason}
            end;
        {error, Reason} ->
            {error, Reason}
    end.

%% @doc Calls the module's `malloc' export. A null pointer is `{error, malloc_failed}';
%% anything else that is not an address inside memory 0 (a negative i64, one at or past the
%% end of memory, no result or more than one) is `{error, {bad_malloc_result, Results}}'.
-spec malloc(hb_beamr:instance(), non_neg_integer()) -> {ok, pos_integer()} | {error, term()}.
malloc(Instance, Size) when ?is_offset(Size) ->
    case hb_beamr:call(Instance, "malloc", [Size]) of
        {ok, [0]} -> {error, malloc_failed};
        {ok, [Ptr]} when is_integer(Ptr) -> inside_memory(Instance, Ptr);
        {ok, Results} -> {error, {bad_malloc_result, Results}};
        {error, Reason} -> {error, Reason}
    end;
malloc(_Instance, Size) ->
    {error, {badarg, {size, Size}}}.

%% Results come back signed: an i32 pointer above 2 GiB is negative and means its unsigned
%% value. A memory64 malloc's i64 in the same range would be taken the same way, but then
%% lands at or past the end of memory (which stays under 4 GiB), so it is refused too.
inside_memory(Instance, Ptr) ->
    Address = case Ptr < 0 andalso Ptr >= -(1 bsl 31) of
                  true -> Ptr + (1 bsl 32);
                  false -> Ptr
              end,
    case size(Instance) of
        {ok, Size} when Address >= 0, Address < Size -> {ok, Address};
        {ok, _Size} -> {error, {bad_malloc_result, [Ptr]}};
        {error, Reason} -> {error, Reason}
    end.

%% @doc Calls the module's `free' export.
-spec free(hb_beamr:instance(), non_neg_integer()) -> ok | {error, term()}.
free(Instance, Ptr) when ?is_offset(Ptr) ->
    case hb_beamr:call(Instance, "free", [Ptr]) of
        {ok, _} -> ok;
        {error, Reason} -> {error, Reason}
    end;
free(_Instance, Ptr) ->
    {error, {badarg, {ptr, Ptr}}}.

%% @doc All of memory 0 (what `hb_beamr:serialize/1' returns).
-spec snapshot(hb_beamr:instance()) -> {ok, binary()} | {error, term()}.
snapshot(Instance) when is_pid(Instance) ->
    request(Instance, memory_snapshot, []);
snapshot(Instance) ->
    {error, {badarg, {instance, Instance}}}.

%% @doc Writes `Data' at offset 0, growing memory 0 first if it is too small.
-spec restore(hb_beamr:instance(), binary()) -> ok | {error, term()}.
restore(Instance, Data) when is_pid(Instance), is_binary(Data) ->
    request(Instance, memory_restore, [Data]);
restore(Instance, Data) ->
    {error, {badarg, {restore, Instance, Data}}}.

%% @private
-spec request(hb_beamr:instance(), atom(), list()) -> term().
request(Instance, Op, Args) when node(Instance) =/= node() ->
    case hb_beamr_owner:on_node(node(Instance), ?MODULE, request, [Instance, Op, Args]) of
        {ok, Reply} -> Reply;
        {error, Reason} -> {error, Reason}
    end;
request(Instance, Op, Args) ->
    case apply(hb_beamr_nif, Op, [Instance | Args]) of
        {event, _Id, Reply} -> Reply;
        {wait, Id} -> awaited(hb_beamr_owner:next_event(Instance, Id));
        {error, Reason} -> {error, Reason}
    end.

awaited({ok, Reply}) -> Reply;
awaited(stopped) -> {error, stopped}.
