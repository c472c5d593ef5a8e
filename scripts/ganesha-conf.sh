# Sourced by the benchmark scripts: the nfs-ganesha configuration they all run it with.
# write_ganesha_conf FILE EXPORT_DIR: NFSv3 on 2049, MOUNT on 20048, no NLM or RQUOTA, one
# read-write export of EXPORT_DIR (VFS backend, no root squash). Fails when the VFS plugin
# (package nfs-ganesha-vfs) is missing.
write_ganesha_conf() {
  local plugins
  plugins=$(dirname "$(dpkg -L nfs-ganesha-vfs 2>/dev/null | grep 'libfsalvfs.so$' | head -1)")
  if [ -z "$plugins" ] || [ "$plugins" = . ]; then
    echo "libfsalvfs.so not found: apt-get install nfs-ganesha-vfs" >&2
    return 1
  fi
  cat >"$1" <<CONF
NFS_CORE_PARAM { Plugins_Dir = $plugins; Protocols = 3; NFS_Port = 2049; MNT_Port = 20048;
  Enable_NLM = false; Enable_RQUOTA = false; }
NFS_KRB5 { Active_krb5 = false; }
EXPORT { Export_Id = 1; Path = $2; Pseudo = /bench; Protocols = 3; Transports = TCP;
  Access_Type = RW; Squash = No_Root_Squash; SecType = sys; FSAL { Name = VFS; } }
LOG { Default_Log_Level = WARN; }
CONF
}
