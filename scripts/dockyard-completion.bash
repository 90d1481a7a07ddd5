# bash completion for dockyard (installed by scripts/setup.sh into /etc/bash_completion.d/).
# Commands and flags come from `dockyard --help` / `dockyard CMD --help` (cached per
# shell); container and image names from the running daemon.

_dockyard_host_args() {
  local i
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "${COMP_WORDS[i]}" in
      -H|--host) printf -- '-H %s' "${COMP_WORDS[i+1]}"; return ;;
    esac
  done
}

_dockyard_flags() {  # flags of one command ("network ls" too), from its --help (cached)
  local cmd=$1 var="_dockyard_flags_${1//[- ]/_}"
  if [ -z "${!var:-}" ]; then
    # shellcheck disable=SC2086
    printf -v "$var" '%s' "$(dockyard $cmd --help 2>/dev/null \
      | grep -oE -- '(^|[ ,])--?[a-zA-Z][-a-zA-Z]*' | tr -d ' ,' | sort -u | tr '\n' ' ')"
  fi
  printf '%s' "${!var}"
}

_dockyard_containers() {
  # shellcheck disable=SC2046
  dockyard $(_dockyard_host_args) ps ${1:+-a} --format '{{.Names}}' 2>/dev/null
}

_dockyard_networks() {
  # shellcheck disable=SC2046
  dockyard $(_dockyard_host_args) network ls --format '{{.Name}}' 2>/dev/null
}

_dockyard_volumes() {
  # shellcheck disable=SC2046
  dockyard $(_dockyard_host_args) volume ls -q 2>/dev/null
}

_dockyard_images() {
  # shellcheck disable=SC2046
  dockyard $(_dockyard_host_args) images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null \
    | grep -v '<none>'
}

_dockyard() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
  local cmd="" i sub="" nargs=0
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "${COMP_WORDS[i]}" in
      -H|--host) ((i++)) ;;
      -*) ;;
      *) if [ -z "$cmd" ]; then cmd=${COMP_WORDS[i]}; elif [ -z "$sub" ]; then sub=${COMP_WORDS[i]}
         else ((nargs++)); fi ;;
    esac
  done
  if [ -z "$cmd" ]; then
    if [[ $cur == -* ]]; then
      mapfile -t COMPREPLY < <(compgen -W "--host --trace --debug --version --help" -- "$cur")
    else
      local cmds
      cmds=$(dockyard --help 2>/dev/null | awk '/^(Management )?Commands:/{on=1; next} on && /^  [a-z]/{print $1}')
      mapfile -t COMPREPLY < <(compgen -W "$cmds" -- "$cur")
    fi
    return
  fi
  case "$cmd" in
    container) case "$sub" in ""|ls|list) ;; *) cmd=$sub ;; esac ;;
    image) case "$sub" in rm|remove) cmd=rmi ;; ls|list) cmd=images ;; "") ;; *) cmd=$sub ;; esac ;;
    network|volume) case "$sub" in list) cmd="$cmd ls" ;; remove) cmd="$cmd rm" ;; "") ;; *) cmd="$cmd $sub" ;; esac ;;
  esac
  if [ "$cmd" = container ] || [ "$cmd" = image ] || [ "$cmd" = system ] || [ "$cmd" = network ] || [ "$cmd" = volume ]; then
    if [ -z "$sub" ]; then
      local subs
      case "$cmd" in
        container) subs="ls run exec create start stop restart kill rm logs attach inspect top stats cp wait rename pause unpause update export commit port" ;;
        network) subs="connect create disconnect inspect ls prune rm" ;;
        volume) subs="create inspect ls prune rm" ;;
        image) subs="ls pull push tag rm save load import history inspect" ;;
        system) subs="df prune info events" ;;
      esac
      mapfile -t COMPREPLY < <(compgen -W "$subs" -- "$cur")
      return
    fi
  fi
  if [[ $cur == -* ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$(_dockyard_flags "$cmd")" -- "$cur")
    return
  fi
  case "$prev" in
    -v|--volume|--env-file|-o|--output|-i|--input|--cidfile|--label-file)
      mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return ;;
    --restart) mapfile -t COMPREPLY < <(compgen -W "no always unless-stopped on-failure" -- "$cur"); return ;;
    --pull) mapfile -t COMPREPLY < <(compgen -W "always missing never" -- "$cur"); return ;;
    --network|--net)
      mapfile -t COMPREPLY < <(compgen -W "bridge host none container: $(_dockyard_networks)" -- "$cur"); return ;;
    --ipc) mapfile -t COMPREPLY < <(compgen -W "none private shareable host container:" -- "$cur"); return ;;
    --pid) mapfile -t COMPREPLY < <(compgen -W "host container:" -- "$cur"); return ;;
    --uts) mapfile -t COMPREPLY < <(compgen -W "host" -- "$cur"); return ;;
    --device) mapfile -t COMPREPLY < <(compgen -f -- "${cur:-/dev/}"); return ;;
    -d|--driver) if [ "$cmd" = "network create" ]; then
        mapfile -t COMPREPLY < <(compgen -W "bridge" -- "$cur"); return; fi ;;
    -s|--signal|--stop-signal)
      mapfile -t COMPREPLY < <(compgen -W "SIGTERM SIGKILL SIGINT SIGHUP SIGUSR1 SIGUSR2 SIGQUIT" -- "$cur"); return ;;
  esac
  case "$cmd" in
    run|create|pull|push|rmi|tag|save|history)
      mapfile -t COMPREPLY < <(compgen -W "$(_dockyard_images)" -- "$cur") ;;
    start|rm|inspect|logs|wait|rename|commit|export|cp)
      mapfile -t COMPREPLY < <(compgen -W "$(_dockyard_containers all)" -- "$cur") ;;
    stop|restart|kill|exec|attach|top|stats|pause|unpause|update|port)
      mapfile -t COMPREPLY < <(compgen -W "$(_dockyard_containers)" -- "$cur") ;;
    "network inspect"|"network rm")
      mapfile -t COMPREPLY < <(compgen -W "$(_dockyard_networks)" -- "$cur") ;;
    "volume inspect"|"volume rm")
      mapfile -t COMPREPLY < <(compgen -W "$(_dockyard_volumes)" -- "$cur") ;;
    "network connect"|"network disconnect")
      if [ "$nargs" -eq 0 ]; then
        mapfile -t COMPREPLY < <(compgen -W "$(_dockyard_networks)" -- "$cur")
      else
        mapfile -t COMPREPLY < <(compgen -W "$(_dockyard_containers all)" -- "$cur")
      fi ;;
  esac
}

complete -F _dockyard dockyard
