// The kernel's floor for one-core SSE fan-out on this machine: the time one thread on core 0
// takes to write() one 100-byte chunk to each of N loopback TCP sockets (TCP_NODELAY), while a
// reader process on core 1 drains them with epoll. No HTTP, no allocation, no runtime: what is
// left is the syscall and the TCP stack, whose loopback receive path also runs on the writer's
// core. Any server that writes each event to each subscriber separately pays at least this per
// event. Run by bench/floor/run; see bench/results/notes.md.
//
//   floor N ROUNDS    (rounds 10 ms apart; prints per-round time quantiles)
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>
#include <fcntl.h>
#include <errno.h>
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <sched.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec/1e9;}
int cmp(const void*a,const void*b){double x=*(double*)a,y=*(double*)b;return x<y?-1:x>y;}
int main(int argc,char**argv){
  int n=atoi(argv[1]), rounds=atoi(argv[2]);
  int l=socket(AF_INET,SOCK_STREAM,0); int one=1; setsockopt(l,SOL_SOCKET,SO_REUSEADDR,&one,4);
  struct sockaddr_in a={.sin_family=AF_INET,.sin_addr.s_addr=htonl(0x7f000001)}; bind(l,(void*)&a,sizeof a); listen(l,8192);
  socklen_t al=sizeof a; getsockname(l,(void*)&a,&al);
  pid_t p=fork();
  if(p==0){ // reader on core 1
    cpu_set_t s;CPU_ZERO(&s);CPU_SET(1,&s);sched_setaffinity(0,sizeof s,&s);
    int ep=epoll_create1(0);
    for(int i=0;i<n;i++){int c=socket(AF_INET,SOCK_STREAM,0); if(connect(c,(void*)&a,sizeof a)){perror("connect");exit(1);} fcntl(c,F_SETFL,O_NONBLOCK);
      struct epoll_event e={.events=EPOLLIN,.data.fd=c}; epoll_ctl(ep,EPOLL_CTL_ADD,c,&e);}
    long want=(long)n*rounds*100, got=0; char buf[65536]; struct epoll_event ev[1024];
    while(got<want){int k=epoll_wait(ep,ev,1024,5000); if(k<=0)break; for(int i=0;i<k;i++){ssize_t r; while((r=read(ev[i].data.fd,buf,sizeof buf))>0) got+=r;}}
    fprintf(stderr,"reader got %ld of %ld bytes\n",got,want); exit(0);
  }
  cpu_set_t s;CPU_ZERO(&s);CPU_SET(0,&s);sched_setaffinity(0,sizeof s,&s);
  int *fds=malloc(n*sizeof(int));
  for(int i=0;i<n;i++){fds[i]=accept(l,0,0); setsockopt(fds[i],IPPROTO_TCP,TCP_NODELAY,&one,4);}
  char msg[100]; memset(msg,'x',100);
  double *t=malloc(rounds*sizeof(double));
  usleep(200000);
  for(int r=0;r<rounds;r++){ double t0=now(); for(int i=0;i<n;i++){ if(write(fds[i],msg,100)!=100){perror("write");} } t[r]=now()-t0; usleep(10000); }
  waitpid(p,0,0);
  qsort(t,rounds,sizeof(double),cmp);
  printf("n=%d rounds=%d per-round ms: min %.2f p50 %.2f p90 %.2f max %.2f ; per write us p50 %.2f\n",n,rounds,t[0]*1e3,t[rounds/2]*1e3,t[rounds*9/10]*1e3,t[rounds-1]*1e3,t[rounds/2]*1e6/n);
}
