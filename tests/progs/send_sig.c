// Large blocking TCP send (sendmsg) to a slow reader (its own child, on
// loopback), under a periodic signal; the reader checks every byte.
// (From the issue-14 semantics review: a send interrupted after part of it
// went out must never be sent twice.)
// usage: send_sig MODE(0 none,1 SA_RESTART,2 no SA_RESTART) MB
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <signal.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/time.h>
#include <netinet/in.h>
#include <arpa/inet.h>
static volatile int sigs;
static void h(int s){(void)s;sigs++;}
int main(int argc,char**argv){
  int mode=atoi(argv[1]); size_t mb=atoi(argv[2]);
  size_t len=mb<<20; size_t words=len/4;
  int l=socket(AF_INET,SOCK_STREAM,0);
  struct sockaddr_in a={.sin_family=AF_INET,.sin_addr.s_addr=htonl(0x7f000001)};
  bind(l,(void*)&a,sizeof a); listen(l,1); socklen_t al=sizeof a; getsockname(l,(void*)&a,&al);
  pid_t c=fork();
  if(c==0){ // reader: slow
    int s=accept(l,0,0); close(l);
    usleep(200000);
    unsigned *b=malloc(65536); size_t got=0; unsigned next=0; int bad=0; unsigned char part[4]; int pl=0;
    for(;;){ ssize_t n=read(s,b,65536); if(n<=0)break;
      unsigned char*p=(unsigned char*)b;
      for(ssize_t i=0;i<n;i++){ part[pl++]=p[i]; if(pl==4){unsigned w; memcpy(&w,part,4); if(w!=next && !bad){bad=1; fprintf(stderr,"reader: word %u is %u (first mismatch)\n",next,w);} next++; pl=0;} }
      got+=n; usleep(300);
    }
    printf("reader: got %zu bytes (expected %zu) %s\n",got,len, (got==len&&!bad)?"OK":"CORRUPT");
    fflush(stdout); _exit(got==len&&!bad?0:1);
  }
  int s=socket(AF_INET,SOCK_STREAM,0);
  if(connect(s,(void*)&a,sizeof a)<0){perror("connect");return 2;}
  unsigned *buf=malloc(len); for(size_t i=0;i<words;i++)buf[i]=i;
  if(mode){ struct sigaction sa={0}; sa.sa_handler=h; sa.sa_flags=mode==1?SA_RESTART:0; sigaction(SIGALRM,&sa,0);
    struct itimerval it={{0,3000},{0,3000}}; setitimer(ITIMER_REAL,&it,0);}
  size_t off=0; int eintr=0, calls=0, partial=0;
  while(off<len){ struct iovec v={(char*)buf+off,len-off}; struct msghdr m={0}; m.msg_iov=&v; m.msg_iovlen=1;
    ssize_t n=sendmsg(s,&m,0); calls++;
    if(n<0){ if(errno==EINTR){eintr++;continue;} perror("sendmsg"); break;}
    if((size_t)n<len-off)partial++;
    off+=n; }
  struct itimerval z={0}; setitimer(ITIMER_REAL,&z,0);
  close(s);
  int st; waitpid(c,&st,0);
  printf("sender: sent %zu calls %d eintr %d partial %d signals %d; reader status %d\n",off,calls,eintr,partial,sigs,WEXITSTATUS(st));
  return WEXITSTATUS(st);
}
