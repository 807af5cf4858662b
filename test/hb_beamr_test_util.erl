%%% @doc Helpers shared by the EUnit suites: fixtures and the HyperBEAM reference modules.
-module(hb_beamr_test_util).

-export([fixture/1, start_fixture/1, shared_file/1, with_shared/2]).
-export([executor_threads/0, settle/2, distribute/0, resident_mb/0, start_peer/0, stop_peer/1]).

%% @doc The text of one of the project's own fixtures under test/fixtures/.
-spec fixture(string()) -> binary().
fixture(Name) ->
    {ok, Bin} = file:read_file(filename:join([root(), "test", "fixtures", Name])),
    Bin.

-spec start_fixture(string()) -> pid().
start_fixture(Name) ->
    {ok, I, _Imports, _Exports} = hb_beamr:start(fixture(Name)),
    I.

%% @doc A file of ../shared (HyperBEAM's modules, spec tests), `undefined' if absent.
-spec shared_file(string()) -> binary() | undefined.
shared_file(Path) ->
    case file:read_file(filename:join(shared_dir(), Path)) of
        {ok, Bin} -> Bin;
        {error, enoent} -> undefined
    end.

%% @doc Runs `Fun(Bytes)' on a HyperBEAM fixture from ../shared (CI has it; a missing
%% file fails the test rather than skipping it).
-spec with_shared(string(), fun((binary()) -> term())) -> term().
with_shared(Path, Fun) ->
    case shared_file(Path) of
        undefined -> error({missing_shared_fixture, filename:join(shared_dir(), Path)});
        Bin -> Fun(Bin)
    end.

shared_dir() ->
    case os:getenv("HB_BEAMR_SHARED") of
        false -> filename:join(root(), "../shared");
        Dir -> Dir
    end.

%% @doc The number of this VM's executor threads (one per live instance).
-spec executor_threads() -> non_neg_integer().
executor_threads() ->
    Tasks = "/proc/" ++ os:getpid() ++ "/task",
    {ok, Threads} = file:list_dir(Tasks),
    length([T || T <- Threads, file:read_file(filename:join([Tasks, T, "comm"])) =:= {ok, <<"hb_beamr_exec\n">>}]).

%% @doc Polls `Measure' for up to 5 s until it returns `Expected'; returns the last value.
-spec settle(fun(() -> term()), term()) -> term().
settle(Measure, Expected) ->
    settle(Measure, Expected, 100).

settle(Measure, Expected, Tries) ->
    case Measure() of
        Expected -> Expected;
        _ when Tries > 0 -> timer:sleep(50), settle(Measure, Expected, Tries - 1);
        Other -> Other
    end.

%% @doc This VM's resident memory in MB.
-spec resident_mb() -> float().
resident_mb() ->
    {ok, Status} = file:read_file("/proc/self/status"),
    [_, Rest] = binary:split(Status, <<"VmRSS:">>),
    [Kb | _] = string:lexemes(Rest, " \t\n"),
    binary_to_integer(Kb) / 1024.

%% @doc Makes this node distributed (starting epmd) if it is not, for peer nodes.
-spec distribute() -> ok.
distribute() ->
    case is_alive() of
        true -> ok;
        false ->
            _ = os:cmd("epmd -daemon"),
            {ok, _} = net_kernel:start([list_to_atom("hb_beamr_test_" ++ os:getpid()), shortnames]),
            ok
    end.

%% @doc A peer node with this node's code path (for `{setup, ...}' fixtures).
-spec start_peer() -> {pid(), node()}.
start_peer() ->
    ok = distribute(),
    {ok, Peer, Node} = peer:start_link(#{name => peer:random_name(), args => ["-pa" | code:get_path()]}),
    {Peer, Node}.

-spec stop_peer({pid(), node()}) -> ok.
stop_peer({Peer, _Node}) ->
    peer:stop(Peer).

%% rebar3 and make run the suites from the project root.
root() ->
    {ok, Dir} = file:get_cwd(),
    Dir.
