# Sourced by the namespace tests: make_hosts makes a "switch" namespace $sw with a bridge, and a
# namespace $tag-H per host H of ${hosts[@]}, each with lo and an eth0 at ${address[H]}/24 on the
# bridge. Every namespace made is added to ${made[@]} (the caller's cleanup deletes them); skip
# is called when namespaces cannot be made here. Both ends of every link are made inside the
# namespaces: nothing appears on the machine's own network.
make_hosts() {
  ip netns add "$sw" 2>"$tmp/netns.err" || skip "ip netns add failed: $(cat "$tmp/netns.err")"
  made+=("$sw")
  ip -n "$sw" link add br0 type bridge
  ip -n "$sw" link set br0 up
  local h ns
  for h in "${hosts[@]}"; do
    ns=$tag-$h
    ip netns add "$ns"
    made+=("$ns")
    ip -n "$sw" link add "port-$h" type veth peer name eth0 netns "$ns"
    ip -n "$sw" link set "port-$h" master br0 up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "${address[$h]}/24" dev eth0
    ip -n "$ns" link set eth0 up
  done
}
