%%% @doc Helpers shared by the EUnit suites: fixtures and the HyperBEAM reference modules.
-module(hb_beamr_test_util).

-export([fixture/1, start_fixture/1, shared_file/1, with_shared/2, with_shared_files/2, string_result/2]).
-export([executor_threads/0, settle/2, distribute/0, resident_mb/0, proportional_mb/0, start_peer/0, stop_peer/1]).
-export([thread_limited_erl/2, copy_for_nobody/1, remove_copy/1, address_limited_peer/1, start_until_refused/2, env/2]).
-export([small_disk_peer/1]).

%% @doc The text of one of the project's own fixtures under test/fixtures/.
-spec fixture(string()) -> binary().
fixture(Name) ->
    {ok, Bin} = file:read_file(filename:join([root(), "test", "fixtures", Name])),
    Bin.

-spec start_fixture(string()) -> pid().
start_fixture(Name) ->
    {ok, I, _Imports, _Exports} = hb_beamr:start(fixture(Name)),
    I.

%% @doc What a call of a function returning a C string gave: the string, or
%% `{trap, Kind}'.
-spec string_result(hb_beamr:instance(), {ok, [integer()], term()} | {error, term(), term()}) ->
    binary() | {trap, atom()}.
string_result(I, {ok, [Ptr], _State}) ->
    {ok, String} = hb_beamr_io:read_string(I, Ptr),
    String;
string_result(_I, {error, {trap, Kind, _}, _State}) ->
    {trap, Kind}.

%% Where the tests that skip for want of ../shared are listed, for `make test''s summary.
-define(SKIPPED, "_build/test/skipped_without_shared.txt").

%% @doc A file of HyperBEAM's fixtures (see `with_shared/2'), `undefined' if absent.
-spec shared_file(string()) -> binary() | undefined.
shared_file(Path) ->
    case shared_dir() of
        {ok, Dir} ->
            case file:read_file(filename:join(Dir, Path)) of
                {ok, Bin} -> Bin;
                {error, enoent} -> undefined
            end;
        none ->
            undefined
    end.

%% @doc Runs `Fun(Bytes)' on a file of HyperBEAM's fixtures: `$HB_BEAMR_SHARED' (which
%% `make' sets when the directory is there), else ../shared. Without that directory the
%% test is skipped: `Fun' is not run, `skipped' is returned, and the skip is printed and
%% listed in ?SKIPPED. With it (as in CI) a missing file fails the test.
-spec with_shared(string(), fun((binary()) -> T)) -> T | skipped.
with_shared(Path, Fun) ->
    in_shared([Path], fun([Bin]) -> Fun(Bin) end, Fun).

%% @doc `with_shared/2' for several files: `Fun' gets their bytes in order.
-spec with_shared_files([string()], fun(([binary()]) -> T)) -> T | skipped.
with_shared_files(Paths, Fun) ->
    in_shared(Paths, Fun, Fun).

%% `Run' on the files' bytes; `Caller', the test's fun, names the test that skips.
in_shared(Paths, Run, Caller) ->
    case shared_dir() of
        {ok, Dir} -> Run([read_shared(Dir, Path) || Path <- Paths]);
        none -> skip(Caller, Paths)
    end.

read_shared(Dir, Path) ->
    File = filename:join(Dir, Path),
    case file:read_file(File) of
        {ok, Bin} -> Bin;
        {error, Why} -> error({missing_shared_fixture, File, Why})
    end.

shared_dir() ->
    case os:getenv("HB_BEAMR_SHARED") of
        false ->
            Default = filename:join(root(), "../shared"),
            case filelib:is_dir(Default) of
                true -> {ok, Default};
                false -> none
            end;
        Dir ->
            {ok, Dir}
    end.

%% Prints and lists the skip of a test and the files it needed. The test is the module of
%% `Caller' (a fun of the test) and the innermost of its functions still on the stack, or
%% else the function that defined `Caller' (a test that made its last call here has left
%% the stack).
skip(Caller, Paths) ->
    {module, Module} = erlang:fun_info(Caller, module),
    {name, Defined} = erlang:fun_info(Caller, name),
    {current_stacktrace, Stack} = erlang:process_info(self(), current_stacktrace),
    [Function | _] = [F || {M, F, _, _} <- Stack, M =:= Module] ++ [Defined],
    Line = io_lib:format("~s:~s needs ~s", [Module, test_name(Function), lists:join(", ", Paths)]),
    io:format(user, "~n  skipped (no ../shared): ~s~n", [Line]),
    ok = filelib:ensure_dir(?SKIPPED),
    ok = file:write_file(?SKIPPED, [Line, $\n], [append]),
    skipped.

%% A fun's or a list comprehension's function (`'-name/1-fun-0-'', `'name/1-lc$^0/1-0-''),
%% as `name'.
test_name(Function) ->
    case re:run(atom_to_list(Function), "^-?([^/]+)/[0-9]", [{capture, all_but_first, list}]) of
        {match, [Name]} -> Name;
        nomatch -> atom_to_list(Function)
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
    proc_mb("/proc/self/status", <<"VmRSS:">>).

%% @doc This VM's proportional set size in MB: resident memory with each page shared by
%% several mappings divided among them.
-spec proportional_mb() -> float().
proportional_mb() ->
    proc_mb("/proc/self/smaps_rollup", <<"\nPss:">>).

%% A field in kB of a /proc file, in MB.
proc_mb(File, Field) ->
    {ok, Text} = file:read_file(File),
    [_, Rest] = binary:split(Text, Field),
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

%% @doc `erl' under a thread limit of `Spare' more than the user it runs as has now plus
%% what a booted VM needs, and the code path it can read (with `Modules', the test modules
%% whose functions the child runs). RLIMIT_NPROC does not bind root, so as root the child
%% runs as nobody.
-spec thread_limited_erl(non_neg_integer(), [module()]) -> {string(), [string()], [string()]}.
thread_limited_erl(Spare, Modules) ->
    Erl = os:find_executable("erl"),
    Prlimit = os:find_executable("prlimit"),
    VmThreads = length(element(2, file:list_dir("/proc/self/task"))),
    case string:trim(os:cmd("id -u")) of
        "0" ->
            Nproc = "--nproc=" ++ integer_to_list(VmThreads + Spare),
            {os:find_executable("setpriv"),
             ["--reuid=65534", "--regid=65534", "--clear-groups", Prlimit, Nproc, "env", "HOME=/tmp", Erl],
             [copy_for_nobody(Modules)]};
        Uid ->
            Mine = length(string:lexemes(os:cmd("ps -L -o lwp= -u " ++ Uid), "\n")),
            {Prlimit, ["--nproc=" ++ integer_to_list(Mine + VmThreads + Spare), Erl], code:get_path()}
    end.

%% @doc The checkout may sit where nobody cannot read it (a fresh `mktemp -d' is 0700):
%% the application, the test modules and the NIF are copied under /tmp, readable by all;
%% the ebin directory of the copy (`remove_copy/1' removes it).
-spec copy_for_nobody([module()]) -> string().
copy_for_nobody(Modules) ->
    Root = filename:join("/tmp", "hb_beamr_nobody_" ++ integer_to_list(erlang:unique_integer([positive]))),
    Ebin = filename:join([Root, "hb_beamr", "ebin"]),
    Priv = filename:join([Root, "hb_beamr", "priv"]),
    ok = filelib:ensure_dir(filename:join(Ebin, "x")),
    ok = filelib:ensure_dir(filename:join(Priv, "x")),
    Beams = filelib:wildcard(filename:join(code:lib_dir(hb_beamr, ebin), "*"))
        ++ [code:which(M) || M <- [?MODULE | Modules]],
    [{ok, _} = file:copy(Beam, filename:join(Ebin, filename:basename(Beam))) || Beam <- Beams],
    [{ok, _} = file:copy(So, filename:join(Priv, filename:basename(So)))
     || So <- filelib:wildcard(filename:join(code:priv_dir(hb_beamr), "*.so"))],
    [ok = file:change_mode(Path, 8#755) || Path <- [Root, filename:dirname(Ebin), Ebin, Priv]],
    Ebin.

%% @doc Removes the copy `thread_limited_erl/2' made for nobody, if it made one.
-spec remove_copy([string()]) -> ok.
remove_copy(CodePath) ->
    [ok = file:del_dir_r(filename:dirname(filename:dirname(Ebin)))
     || Ebin <- CodePath, lists:prefix("/tmp/hb_beamr_nobody_", Ebin)],
    ok.

%% @doc A peer VM under an address-space limit of `Bytes' (`prlimit --as'), with this
%% node's code path.
-spec address_limited_peer(pos_integer()) -> {pid(), node()}.
address_limited_peer(Bytes) ->
    ok = distribute(),
    Limited = {os:find_executable("prlimit"), ["--as=" ++ integer_to_list(Bytes), os:find_executable("erl")]},
    {ok, Peer, Node} = peer:start_link(#{name => peer:random_name(), exec => Limited,
                                         args => ["-pa" | code:get_path()]}),
    {Peer, Node}.

%% @doc A peer VM in a mount namespace of its own (`unshare', as root of a user namespace
%% of its own) where a new directory is a tmpfs of `Bytes': a disk that fills up. The
%% directory, empty outside the peer, is for the caller to remove.
-spec small_disk_peer(pos_integer()) -> {pid(), node(), string()}.
small_disk_peer(Bytes) ->
    ok = distribute(),
    Dir = filename:join("/tmp", "hb_beamr_small_disk_" ++ integer_to_list(erlang:unique_integer([positive]))),
    ok = file:make_dir(Dir),
    Mount = "mount -t tmpfs -o size=" ++ integer_to_list(Bytes) ++ " hb_beamr_small_disk " ++ Dir
        ++ " && exec \"$0\" \"$@\"",
    Exec = {os:find_executable("unshare"),
            ["--user", "--map-root-user", "--mount", "sh", "-c", Mount, os:find_executable("erl")]},
    {ok, Peer, Node} = peer:start_link(#{name => peer:random_name(), exec => Exec,
                                         args => ["-pa" | code:get_path()]}),
    {Peer, Node, Dir}.

%% @doc Starts instances of `Wasm' until one is refused (or `Max' are running): those
%% started, and the refusal.
-spec start_until_refused(binary(), pos_integer()) -> {[hb_beamr:instance()], term()}.
start_until_refused(Wasm, Max) ->
    start_until_refused(Wasm, Max, []).

start_until_refused(_Wasm, 0, Started) ->
    {Started, none_refused};
start_until_refused(Wasm, Max, Started) ->
    case hb_beamr:start(Wasm) of
        {ok, I, _, _} -> start_until_refused(Wasm, Max - 1, [I | Started]);
        Refused -> {Started, Refused}
    end.

%% @doc The OS environment variable `Name', or `Default' when it is unset or empty (as
%% make passes a variable nobody set).
-spec env(string(), string()) -> string().
env(Name, Default) ->
    case os:getenv(Name) of
        false -> Default;
        "" -> Default;
        Value -> Value
    end.

%% rebar3 and make run the suites from the project root.
root() ->
    {ok, Dir} = file:get_cwd(),
    Dir.
